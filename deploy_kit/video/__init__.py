"""Video files, live streams and cameras: sources that yield frames (sources.py), the sinks that write
what comes out of the segmenter for each source (sinks.py), and the loop between them (run.py)."""
