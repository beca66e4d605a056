"""doit task creators.  Nothing here does pipeline work: each module turns the
validated configuration into task dictionaries whose actions are functions of
the release package."""
