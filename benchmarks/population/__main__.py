import sys

from benchmarks.population.harness import main

sys.exit(main())
