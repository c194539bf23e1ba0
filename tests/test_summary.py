from visiontrain.models import create_model
from visiontrain.models.summary import format_table, layer_table


def test_lenet_table_matches_the_hand_computation():
    model = create_model("lenet", num_classes=10, in_channels=1, image_size=28)
    rows = layer_table(model, (1, 28, 28))
    shapes = [r.output_shape for r in rows if r.kind in ("Conv2d", "MaxPool2d", "Linear")]
    assert shapes == [(6, 24, 24), (6, 12, 12), (12, 8, 8), (12, 4, 4), (120,), (60,), (10,)]
    conv1 = next(r for r in rows if r.kind == "Conv2d")
    assert conv1.parameters == 6 * 25 + 6 and conv1.mult_adds == 6 * 24 * 24 * 25
    assert sum(r.parameters for r in rows) == 32_998
    text = format_table(model, (1, 28, 28))
    assert "32,998 parameters" in text and "[12, 4, 4]" in text


def test_every_seed_model_and_a_torchvision_model_summarise():
    for name, shape in [("mlp", (1, 28, 28)), ("simple-cnn", (1, 28, 28)), ("vgg-cifar", (3, 32, 32)),
                        ("fastnet", (1, 28, 28)), ("resnet18", (3, 64, 64))]:
        model = create_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1])
        rows = layer_table(model, shape)
        assert rows[-1].output_shape == (10,) and sum(r.mult_adds for r in rows) > 0
