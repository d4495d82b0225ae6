import sys

from execdriver.cli.main import main

sys.exit(main())
