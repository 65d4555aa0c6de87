import sys

from linkgate.cli import main

sys.exit(main())
