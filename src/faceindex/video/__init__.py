"""Videos as indexed media: their tracks (one person within one shot), timecodes and frame thumbnails."""
