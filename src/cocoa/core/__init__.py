"""The bottom layer: types and settings every other layer shares, importing nothing else of cocoa.

``defaults`` (shared numbers), ``tokens`` (position roles and modalities, the ignored label),
``batch`` (the padded batch a forward pass takes), ``protocol`` (how an item becomes an
embedding, images and videos), ``matryoshka`` (embedding widths) and ``spec`` (a checkpoint's
``cocoa.json``). With :mod:`cocoa.errors`, :mod:`cocoa.files`, :mod:`cocoa.schema`
and :mod:`cocoa.cli_errors` they may be imported from anywhere.
"""
