"""Image → faces pipeline: decode, detect, align, embed, judge quality. No storage here."""
