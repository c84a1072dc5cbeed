"""What ``$validate`` is asked, put the way the store reads it."""
