"""`python -m o2omarl.cli ...`: the same as `bench ...`."""

from o2omarl.cli import main

main()
