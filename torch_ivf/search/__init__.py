"""Search machinery shared by every IVF index: the per-query state (state.py), the scanner contract
(scanner.py), the grouped and matrix paths (grouped.py, matrix.py), the choice between them
(choose.py), CUDA-graph replay (graphs.py) and the search entry that ties them (paths.py)."""
