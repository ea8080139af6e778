"""One module per group of suite rows; each function (quick, device) -> list[Row]."""
