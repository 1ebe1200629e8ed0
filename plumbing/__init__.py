"""What every command of the three packages shares: config parsing and the CLI contract (``cli``),
user errors (``errors``), directories and files written all at once (``atomic``), JSON files
(``jsonio``) and reading user text files (``files``). It imports none of them."""
