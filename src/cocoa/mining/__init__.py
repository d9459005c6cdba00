"""Batch mining for stage 3 (B3-style): a teacher ranks the training set, METIS groups rows that are
strong negatives of each other into communities, and batches are drawn from whole communities."""
