"""Reading: parse and check parameters into neutral specs, render stored events."""
