"""`python -m imgcls.cli` runs the `imgcls` command."""
from . import main

main()
