"""ImageNet weights for GoogLeNet: converters from Caffe and torchvision, the local cache, the class index."""
