(markdown) => { window.peerqa.download(markdown); }
