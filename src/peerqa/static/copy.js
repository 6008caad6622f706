(markdown) => { window.peerqa.copy(markdown); }
