"""The sanitas INT8 model zoo: LeNet-5, ResNet-20, MobileNet-V2 (small) and VGG (small), all ``QNet``s.

Sized to train in seconds-to-minutes on 8x8 digits on 2 CPU cores, and to accept 28x28 (MNIST) and
32x32x3 (CIFAR-10) inputs unchanged (the classifier's input size follows the input shape).
No batch norm: every conv carries an int32 bias, so the integer model is exactly the trained one
(folding BN into power-of-two-scaled weights would change the net after training).
Global average pooling is a global *sum* followed by a requantisation: the 1/(H*W) factor is absorbed
into the learned power-of-two scale, which keeps the pool exact in integers for any H*W (49 on MNIST).
"""
from __future__ import annotations

from .graph import GraphBuilder, QNet
from .ops import spec


def _out(h, k, s, p, d=1):
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


def lenet5(in_shape=(1, 8, 8), num_classes=10) -> QNet:
    """LeNet-5: conv5x5(6)-pool-conv5x5(16)-pool-fc120-fc84-fc(classes); 'same' padding so 8x8 inputs fit."""
    c, h, w = in_shape
    b = GraphBuilder()
    x = b.input()
    x = b.conv("conv1", x, c, 6, 5, padding=2)
    x = b.relu("relu1", x)
    x = b.maxpool("pool1", x, 2)
    h, w = h // 2, w // 2
    x = b.conv("conv2", x, 6, 16, 5, padding=2)
    x = b.relu("relu2", x)
    x = b.maxpool("pool2", x, 2)
    h, w = h // 2, w // 2
    x = b.flatten("flatten", x)
    x = b.linear("fc1", x, 16 * h * w, 120)
    x = b.relu("relu3", x)
    x = b.linear("fc2", x, 120, 84)
    x = b.relu("relu4", x)
    b.linear("fc3", x, 84, num_classes)
    return QNet(b.nodes, b.modules, {"name": "lenet5", "in_shape": list(in_shape), "num_classes": num_classes})


def _residual(b: GraphBuilder, name, main, short, out_relu=True):
    """out = act(q(main) + q(short)) with one shared int8 quantiser q, so the add is exact in integers."""
    qm = b.ident(f"{name}_qm", main)
    qs = b.ident(f"{name}_qs", short, share=qm)
    s = b.add(f"{name}_add", qm, qs)
    return b.relu(f"{name}_out", s) if out_relu else b.ident(f"{name}_out", s)


def resnet20(in_shape=(1, 8, 8), num_classes=10, width=16) -> QNet:
    """ResNet-20 (He et al. CIFAR variant): 3 stages x 3 basic blocks, widths w/2w/4w, 1x1 projection shortcuts."""
    c, h, w = in_shape
    b = GraphBuilder()
    x = b.input()
    x = b.relu("stem_relu", b.conv("stem", x, c, width, 3, padding=1))
    cin = width
    for stage, cout in enumerate((width, 2 * width, 4 * width)):
        for blk in range(3):
            stride = 2 if (stage > 0 and blk == 0) else 1
            n = f"s{stage}b{blk}"
            y = b.relu(f"{n}_relu1", b.conv(f"{n}_conv1", x, cin, cout, 3, stride, 1))
            y = b.conv(f"{n}_conv2", y, cout, cout, 3, 1, 1)
            sc = x if (stride == 1 and cin == cout) else b.conv(f"{n}_proj", x, cin, cout, 1, stride, 0)
            x = _residual(b, n, y, sc, True)
            cin = cout
    x = b.relu("pool_q", b.gsum("pool", x))
    b.linear("fc", x, cin, num_classes)
    net = QNet(b.nodes, b.modules, {"name": "resnet20", "in_shape": list(in_shape),
                                    "num_classes": num_classes, "width": width})
    _torch_default_init(net)
    return net


def _torch_default_init(net: QNet) -> None:
    """ResNet-20 trains best from PyTorch's default (uniform, gain 1/sqrt(3)) init: with identity shortcuts the
    signal does not vanish, and He init makes the un-normalised residual stream grow with depth (measured on
    digits, 3 epochs: 93% test accuracy vs 85% with He init and damped branches)."""
    for n in net.nodes:
        if spec(n.op).has_weights:
            net.module_of(n).reset_parameters()


# (expansion t, output channels c, repeats n, first stride s) — a small MobileNet-V2 for 8x8..32x32 inputs
MBV2_SMALL = ((1, 8, 1, 1), (4, 16, 2, 2), (4, 24, 2, 2), (4, 32, 1, 1))


def mobilenetv2(in_shape=(1, 8, 8), num_classes=10, stem=16, last=64, cfg=MBV2_SMALL) -> QNet:
    """MobileNet-V2 (small): inverted residuals with depthwise 3x3 and linear (int8, no ReLU) bottlenecks."""
    c, h, w = in_shape
    b = GraphBuilder()
    x = b.input()
    x = b.relu("stem_relu", b.conv("stem", x, c, stem, 3, 1, 1))
    cin = stem
    k = 0
    for t, cout, n, s in cfg:
        for i in range(n):
            stride = s if i == 0 else 1
            nm = f"ir{k}"
            hid = cin * t
            y = x
            if t != 1:
                y = b.relu(f"{nm}_exp_relu", b.conv(f"{nm}_exp", y, cin, hid, 1))
            y = b.relu(f"{nm}_dw_relu", b.conv(f"{nm}_dw", y, hid, hid, 3, stride, 1, groups=hid))
            y = b.conv(f"{nm}_proj", y, hid, cout, 1)
            if stride == 1 and cin == cout:
                x = _residual(b, nm, y, x, out_relu=False)
            else:
                x = b.ident(f"{nm}_q", y)
            cin = cout
            k += 1
    x = b.relu("head_relu", b.conv("head", x, cin, last, 1))
    x = b.relu("pool_q", b.gsum("pool", x))
    b.linear("fc", x, last, num_classes)
    return QNet(b.nodes, b.modules, {"name": "mobilenetv2", "in_shape": list(in_shape), "num_classes": num_classes})


VGG_SMALL = (16, 16, "M", 32, 32, "M", 64, "M")


def vgg(in_shape=(1, 8, 8), num_classes=10, cfg=VGG_SMALL, hidden=64) -> QNet:
    """VGG (small): 3x3 conv stacks with max pooling, then two fully connected layers."""
    c, h, w = in_shape
    b = GraphBuilder()
    x = b.input()
    cin, i = c, 0
    for v in cfg:
        if v == "M":
            x = b.maxpool(f"pool{i}", x, 2)
            h, w = h // 2, w // 2
        else:
            x = b.relu(f"conv{i}_relu", b.conv(f"conv{i}", x, cin, v, 3, 1, 1))
            cin = v
        i += 1
    x = b.flatten("flatten", x)
    x = b.relu("fc1_relu", b.linear("fc1", x, cin * h * w, hidden))
    b.linear("fc2", x, hidden, num_classes)
    return QNet(b.nodes, b.modules, {"name": "vgg", "in_shape": list(in_shape), "num_classes": num_classes})


ZOO = {"lenet5": lenet5, "resnet20": resnet20, "mobilenetv2": mobilenetv2, "vgg": vgg}
