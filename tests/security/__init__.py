"""The security and reliability probe suite: one module per defect class, each with the repro that once broke it.

Every test here failed on the code before its fix. They run with the rest of the suite (`make test`).
"""
