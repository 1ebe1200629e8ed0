"""Where a sweep runs: connecting to Ray (``connect``), placing trials on its nodes (``placement``),
and a local Ray that ends with its driver (``reaper``)."""
