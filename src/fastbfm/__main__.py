from fastbfm.cli import main

main()
