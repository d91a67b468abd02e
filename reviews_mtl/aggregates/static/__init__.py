"""Static files of the read API (the page). A package only so that wheels carry ``index.html``: the
project's package-data patterns apply to packages, not to plain folders."""
