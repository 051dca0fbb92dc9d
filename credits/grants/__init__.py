"""Grant administration: programs (funding calls) and projects with their members."""
