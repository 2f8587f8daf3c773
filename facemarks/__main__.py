import sys

from facemarks.cli import main

sys.exit(main())
