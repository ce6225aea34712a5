"""`python -m training.bench`: `make bench`, every section of experiments/RESULTS.md."""

from training.bench.run import main

raise SystemExit(main())
