"""Public corpora turned into canonical labelled records.

One module per source (`load_<source>(root)`), the registry and build in `registry`, the CLI in
`cli`. The label mapping is documented in MAPPING.md (to be merged into data/README.md).
"""
