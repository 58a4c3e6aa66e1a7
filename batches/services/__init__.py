"""Writes on files and batches, one module per concern:

files       upload, delete, expire
batches     create, cancel
validation  the input file read into lines (validating → in_progress, or failed)
runs        the runner's lease on a batch and each line's claim and record (the exactly-once part)
finalize    the output and error files, and the batch's last status
"""
