"""The bottom layer: types and settings every other layer shares, importing nothing else of cocoa.

``defaults`` (shared numbers), ``tokens`` (position roles and modalities, the ignored label),
``batch`` (the padded batch a forward pass takes), ``protocol`` (how an item becomes an
embedding, images and videos), ``matryoshka`` (embedding dims) and ``spec`` (a checkpoint's
``cocoa.json``), ``errors`` (errors naming file, row and field), ``files`` (atomic writes),
``schema`` (the strict base of recipes), ``cli_errors`` and ``console`` (how commands print);
every other layer may import them.
"""
