"""Building blocks shared by the pages: panels, the poll path, shell controls, URL state."""
