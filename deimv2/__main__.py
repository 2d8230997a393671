import sys

from deimv2.cli import main

sys.exit(main())
