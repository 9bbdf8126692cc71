"""The web demo driven in headless Chromium (a package, so its module names do not clash with tests/)."""
