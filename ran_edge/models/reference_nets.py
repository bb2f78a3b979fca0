"""Reference networks the RAN-e comparison needs: ResNet-18 and RepVGG-A0 (deploy form).

Both are dense-conv networks with high MAC counts; on micro-NPUs they show what MAC
utilisation buys and what it cannot buy (1.8 and 1.4 GMACs against EfficientNet-Lite0's 0.4).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ran_edge.blocks import ConvBN, RepVGGBlock, to_deploy
from ran_edge.models.registry import calibrate_batchnorm, register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride)
        self.act = nn.ReLU()
        self.conv2 = ConvBN(cout, cout, 3)
        self.shortcut = ConvBN(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.conv2(self.act(self.conv1(x))) + skip)


class ResNet18(nn.Module):
    """He et al. 2016: 7x7/2 stem, max-pool, four stages of two basic blocks."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBN(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        widths, blocks, cin = (64, 128, 256, 512), [], 64
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks += [BasicBlock(cin, width, stride), BasicBlock(width, width, 1)]
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class RepVGG(nn.Module):
    """Ding et al. 2021, A0: widths 48/48/96/192/1280, depths 1/2/4/14/1, 3x3 + 1x1 + BN."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        widths, depths, layers, cin = (48, 48, 96, 192, 1280), (1, 2, 4, 14, 1), [], 3
        for width, depth in zip(widths, depths, strict=True):
            for i in range(depth):
                layers.append(RepVGGBlock(cin, width, 3, 2 if i == 0 else 1))
                cin = width
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.stages(x)), 1))


@register_model("resnet18", family="resnet", description="ResNet-18 (He 2016), 224x224")
def resnet18(**kwargs: Any) -> ResNet18:
    return ResNet18(**kwargs)


@register_model(
    "repvgg_a0",
    family="repvgg",
    description="RepVGG-A0 (Ding 2021) in deploy form: plain 3x3 convs, 224x224",
)
def repvgg_a0(**kwargs: Any) -> nn.Module:
    # Branch statistics must exist before the branches are merged into one conv.
    train_form = RepVGG(**kwargs)
    calibrate_batchnorm(train_form, (1, 3, 224, 224))
    return to_deploy(train_form)
