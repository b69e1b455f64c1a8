"""Training side (PyTorch). Imported only by ``fit``; serving never imports this package."""
