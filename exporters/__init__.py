"""Exporters turn a trained (torch) compressor into a serving format. Training side only."""
