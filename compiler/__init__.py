"""catad's compiler passes, one module per pass, each a function `(ir) -> ir`."""
