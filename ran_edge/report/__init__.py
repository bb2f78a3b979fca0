"""Reports: versioned JSON records and the console tables people read."""
