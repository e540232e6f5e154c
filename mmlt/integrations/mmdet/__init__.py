"""Parts that subclass MMDetection classes. Imported only when mmdet is installed."""
