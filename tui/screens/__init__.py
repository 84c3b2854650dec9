"""One screen per module, each with a sibling .tcss file."""
