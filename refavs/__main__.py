import sys

from refavs.cli import main

sys.exit(main())
