"""peerqa: answers about mental-health Peer Support Workers, built from cited, verbatim passages."""
