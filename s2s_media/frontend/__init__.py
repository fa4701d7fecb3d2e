"""Front-ends: audio loading and log-mels, images, voice activity, augmentation. They import nothing above them."""
