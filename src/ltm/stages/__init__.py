"""Pipeline stages, one module per stage: each loads params, calls the library, and writes its artifact's
lineage. What each stage reads, writes and runs is described once, in `ltm.pipeline`.
"""
