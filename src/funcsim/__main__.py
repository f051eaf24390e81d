import sys

from funcsim.cli import main

sys.exit(main())
