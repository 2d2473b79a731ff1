"""``vitdeploy package``: files land where each platform expects, projects stay consistent.

Fast tests work on copies of the bundled harness projects (pbxproj editing, app detection,
errors). Slow tests (``--runslow``) convert real models: a MobileViT-XXS .tflite (~30-60 s) and a
tiny Core ML .mlpackage, package them into copies of ``android_harness/`` and ``ios_harness/``,
and compile *and run* the generated Kotlin helper on the JVM against small Java stand-ins of the
Android / LiteRT APIs it uses (skipped when kotlinc or javac is missing). The Swift helper cannot
be compiled on Linux; its structure is checked instead.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vitdeploy.errors import VitdeployError
from vitdeploy.packaging import default_class_name, infer_platform, package
from vitdeploy.packaging.android import find_android_app
from vitdeploy.packaging.codegen import kotlin_helper, swift_helper
from vitdeploy.packaging.ios import add_files_to_pbxproj, dangling_references, find_xcode_project, parse_pbxproj

REPO = Path(__file__).resolve().parents[1]
ANDROID_HARNESS = REPO / "android_harness"
IOS_HARNESS = REPO / "ios_harness"
LABELS = [f"label {i}" for i in range(1000)]
TINY_LABELS = ["cat", "dog", "bird", "fish", "frog"]
# Each model's helper class is named after its file (default_class_name); the fixtures' helpers:
NET_SWIFT = "NetClassifier.swift"  # the file the pbxproj tests add next to Net.mlpackage
TFLITE_KT = "MobilevitXxsClassifier.kt"  # mobilevit_xxs.tflite
TFLITE_LABELS = "mobilevit_xxs_labels.txt"
TINY_SWIFT = "TinyLabelsClassifier.swift"  # Tiny_labels.mlpackage
PTE_KT, PTE_SWIFT = "TinyVitClassifier.kt", "TinyVitClassifier.swift"  # tiny_vit.pte
PTE_LABELS = "tiny_vit_labels.txt"


# ----------------------------------------------------------------------------- helpers


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _ids_consistent(text: str) -> list[str]:
    """Independent of the package's parser: every 24-hex ID used is defined as an object."""
    defined = set(re.findall(r"^\s*([0-9A-F]{24})(?:\s*/\*.*?\*/)?\s*=\s*\{", text, re.M))
    used = set(re.findall(r"\b([0-9A-F]{24})\b", text))
    return sorted(used - defined)


def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    assert excinfo.value.exit_code == 2
    return message


SYNCHRONIZED_PBXPROJ = """// !$*UTF8*$!
{
	archiveVersion = 1;
	classes = {
	};
	objectVersion = 77;
	objects = {

/* Begin PBXFileReference section */
		AA0000000000000000000013 /* MyApp.app */ = {isa = PBXFileReference; explicitFileType = wrapper.application; includeInIndex = 0; path = MyApp.app; sourceTree = BUILT_PRODUCTS_DIR; };
/* End PBXFileReference section */

/* Begin PBXFileSystemSynchronizedRootGroup section */
		AA0000000000000000000004 /* MyApp */ = {
			isa = PBXFileSystemSynchronizedRootGroup;
			path = MyApp;
			sourceTree = "<group>";
		};
/* End PBXFileSystemSynchronizedRootGroup section */

/* Begin PBXGroup section */
		AA0000000000000000000002 = {
			isa = PBXGroup;
			children = (
				AA0000000000000000000004 /* MyApp */,
				AA0000000000000000000003 /* Products */,
			);
			sourceTree = "<group>";
		};
		AA0000000000000000000003 /* Products */ = {
			isa = PBXGroup;
			children = (
				AA0000000000000000000013 /* MyApp.app */,
			);
			name = Products;
			sourceTree = "<group>";
		};
/* End PBXGroup section */

/* Begin PBXNativeTarget section */
		AA0000000000000000000040 /* MyApp */ = {
			isa = PBXNativeTarget;
			buildConfigurationList = AA0000000000000000000071;
			buildPhases = (
				AA0000000000000000000030 /* Sources */,
			);
			fileSystemSynchronizedGroups = (
				AA0000000000000000000004 /* MyApp */,
			);
			name = MyApp;
			productName = MyApp;
			productReference = AA0000000000000000000013 /* MyApp.app */;
			productType = "com.apple.product-type.application";
		};
/* End PBXNativeTarget section */

/* Begin PBXProject section */
		AA0000000000000000000001 /* Project object */ = {
			isa = PBXProject;
			buildConfigurationList = AA0000000000000000000070;
			mainGroup = AA0000000000000000000002;
			productRefGroup = AA0000000000000000000003 /* Products */;
			projectDirPath = "";
			projectRoot = "";
			targets = (
				AA0000000000000000000040 /* MyApp */,
			);
		};
/* End PBXProject section */

/* Begin PBXSourcesBuildPhase section */
		AA0000000000000000000030 /* Sources */ = {
			isa = PBXSourcesBuildPhase;
			buildActionMask = 2147483647;
			files = (
			);
			runOnlyForDeploymentPostprocessing = 0;
		};
/* End PBXSourcesBuildPhase section */

/* Begin XCBuildConfiguration section */
		AA0000000000000000000060 /* Debug */ = {
			isa = XCBuildConfiguration;
			buildSettings = {
				SDKROOT = iphoneos;
			};
			name = Debug;
		};
/* End XCBuildConfiguration section */

/* Begin XCConfigurationList section */
		AA0000000000000000000070 = {
			isa = XCConfigurationList;
			buildConfigurations = (
				AA0000000000000000000060 /* Debug */,
			);
		};
		AA0000000000000000000071 = {
			isa = XCConfigurationList;
			buildConfigurations = (
				AA0000000000000000000060 /* Debug */,
			);
		};
/* End XCConfigurationList section */
	};
	rootObject = AA0000000000000000000001 /* Project object */;
}
"""


def _synchronized_app(tmp_path: Path) -> Path:
    app = tmp_path / "MyApp"
    (app / "MyApp.xcodeproj").mkdir(parents=True)
    (app / "MyApp.xcodeproj" / "project.pbxproj").write_text(SYNCHRONIZED_PBXPROJ)
    (app / "MyApp").mkdir()
    (app / "MyApp" / "MyAppApp.swift").write_text("import SwiftUI\n")
    return app


# ----------------------------------------------------------------------------- fast: Xcode projects


def test_harness_pbxproj_parses_and_is_consistent():
    text = (IOS_HARNESS / "VitdeployHarness.xcodeproj" / "project.pbxproj").read_text()
    pbx = parse_pbxproj(text)
    assert pbx["objects"][pbx["rootObject"]]["isa"] == "PBXProject"
    assert dangling_references(pbx) == [] and _ids_consistent(text) == []
    # The checker is not vacuous: a reference to an undefined object is reported by both.
    broken = text.replace("0A0000000000000000000010 /* VitdeployHarnessApp.swift */,",
                          "0A00000000000000000000FF /* gone.swift */,")
    assert dangling_references(parse_pbxproj(broken)) == ["0A00000000000000000000FF"]
    assert _ids_consistent(broken) == ["0A00000000000000000000FF"]
    with pytest.raises(ValueError):
        parse_pbxproj(text.replace("isa = PBXGroup;", "isa = PBXGroup", 1))


def test_find_xcode_project_in_harness(tmp_path):
    app = _copy(IOS_HARNESS, tmp_path)
    found = find_xcode_project(app)
    assert found["target_name"] == "VitdeployHarness"  # the app, not the test bundle
    assert found["source_dir"] == app / "VitdeployHarness"
    assert found["synchronized"] is False
    assert find_xcode_project(app / "VitdeployHarness.xcodeproj")["source_dir"] == app / "VitdeployHarness"


def test_add_files_to_pbxproj_groups_and_phases(tmp_path):
    app = _copy(IOS_HARNESS, tmp_path)
    found = find_xcode_project(app)
    files = [("Net.mlpackage", "model"), ("Net_labels.txt", "resource"), (NET_SWIFT, "source")]
    text = add_files_to_pbxproj(found["pbx_text"], found["target_id"], found["group_id"], files)
    assert _ids_consistent(text) == []
    objects = parse_pbxproj(text)["objects"]
    group = objects[found["group_id"]]
    refs = {objects[c]["path"]: c for c in group["children"]}
    assert set(refs) == {"VitdeployHarnessApp.swift", "Net.mlpackage", "Net_labels.txt", NET_SWIFT}
    assert objects[refs["Net.mlpackage"]]["lastKnownFileType"] == "folder.mlpackage"
    assert objects[refs[NET_SWIFT]]["lastKnownFileType"] == "sourcecode.swift"

    def phase_refs(target_id, isa):
        phase = next(objects[p] for p in objects[target_id]["buildPhases"] if objects[p]["isa"] == isa)
        return {objects[b]["fileRef"] for b in phase["files"]}

    app_target, test_target = parse_pbxproj(text)["objects"][parse_pbxproj(text)["rootObject"]]["targets"]
    # Core ML models compile (Sources) so Xcode generates the class; labels are a resource.
    assert {refs["Net.mlpackage"], refs[NET_SWIFT]} <= phase_refs(app_target, "PBXSourcesBuildPhase")
    assert refs["Net_labels.txt"] in phase_refs(app_target, "PBXResourcesBuildPhase")
    assert refs["Net_labels.txt"] not in phase_refs(app_target, "PBXSourcesBuildPhase")
    # Nothing leaks into the unit-test target.
    assert not {refs["Net.mlpackage"], refs[NET_SWIFT]} & phase_refs(test_target, "PBXSourcesBuildPhase")
    # Adding the same files again changes nothing.
    assert add_files_to_pbxproj(text, found["target_id"], found["group_id"], files) == text


def test_add_files_creates_missing_resources_phase_and_quotes_names(tmp_path):
    app = _copy(IOS_HARNESS, tmp_path)
    found = find_xcode_project(app)
    pbx_text = found["pbx_text"]
    # Drop the app target's (empty) Resources phase: the edit must create one.
    pbx_text = pbx_text.replace("\t\t\t\t0A0000000000000000000032 /* Resources */,\n", "", 1)
    start = pbx_text.index("\t\t0A0000000000000000000032 /* Resources */ = {")
    end = pbx_text.index("};\n", start) + 3
    pbx_text = pbx_text[:start] + pbx_text[end:]
    assert _ids_consistent(pbx_text) == []
    text = add_files_to_pbxproj(pbx_text, found["target_id"], found["group_id"], [("my labels.txt", "resource")])
    assert _ids_consistent(text) == []
    assert 'path = "my labels.txt";' in text
    objects = parse_pbxproj(text)["objects"]
    phases = [objects[p]["isa"] for p in objects[found["target_id"]]["buildPhases"]]
    assert phases.count("PBXResourcesBuildPhase") == 1


def test_unreadable_project_is_refused(tmp_path):
    app = _copy(IOS_HARNESS, tmp_path)
    found = find_xcode_project(app)
    pbxproj = app / "VitdeployHarness.xcodeproj" / "project.pbxproj"
    text = pbxproj.read_text()
    # A merge left a conflict marker in the file.
    pbxproj.write_text(text.replace("/* Begin PBXGroup section */", "<<<<<<< HEAD\n/* Begin PBXGroup section */", 1))
    with pytest.raises(VitdeployError) as e:
        find_xcode_project(app)
    assert "cannot parse" in _one_line_error(e)
    for broken in (text[:len(text) // 2], text.replace("isa = PBXGroup;", "isa = PBXGroup", 1), ""):
        with pytest.raises(VitdeployError) as e:
            add_files_to_pbxproj(broken, found["target_id"], found["group_id"], [(NET_SWIFT, "source")])
        assert "cannot parse" in _one_line_error(e) and "nothing written" in str(e.value)


def test_project_with_dangling_references_is_not_edited(tmp_path):
    found = find_xcode_project(_copy(IOS_HARNESS, tmp_path))
    child = "0A0000000000000000000010 /* VitdeployHarnessApp.swift */,"
    broken = found["pbx_text"].replace(child, child + "\n\t\t\t\t0A00000000000000000000FF /* gone.swift */,", 1)
    assert _ids_consistent(broken) == ["0A00000000000000000000FF"]
    with pytest.raises(VitdeployError) as e:
        add_files_to_pbxproj(broken, found["target_id"], found["group_id"], [(NET_SWIFT, "source")])
    message = _one_line_error(e)
    assert "0A00000000000000000000FF" in message and "nothing written" in message


def test_add_files_next_to_a_swift_package_product(tmp_path):
    """A build file with ``productRef`` and no ``fileRef`` (a linked Swift package product) is left alone,
    and nothing in the project changes but the lists the edit appends to."""
    found = find_xcode_project(_copy(IOS_HARNESS, tmp_path))
    text = found["pbx_text"].replace(
        "/* End PBXBuildFile section */",
        "\t\t0A00000000000000000000A0 /* Y in Frameworks */ = {isa = PBXBuildFile; "
        "productRef = 0A00000000000000000000A1 /* Y */; };\n/* End PBXBuildFile section */", 1)
    frameworks = "0A0000000000000000000031 /* Frameworks */ = {\n\t\t\tisa = PBXFrameworksBuildPhase;\n" \
                 "\t\t\tbuildActionMask = 2147483647;\n\t\t\tfiles = (\n"
    assert frameworks in text
    text = text.replace(frameworks, frameworks + "\t\t\t\t0A00000000000000000000A0 /* Y in Frameworks */,\n", 1)
    text = text.replace(
        "/* End XCConfigurationList section */\n",
        "/* End XCConfigurationList section */\n\n/* Begin XCSwiftPackageProductDependency section */\n"
        "\t\t0A00000000000000000000A1 /* Y */ = {\n\t\t\tisa = XCSwiftPackageProductDependency;\n"
        "\t\t\tproductName = Y;\n\t\t};\n/* End XCSwiftPackageProductDependency section */\n", 1)
    assert _ids_consistent(text) == [] and dangling_references(parse_pbxproj(text)) == []
    files = [("Net.mlpackage", "model"), (NET_SWIFT, "source")]
    edited = add_files_to_pbxproj(text, found["target_id"], found["group_id"], files)
    assert _ids_consistent(edited) == []
    before, after = parse_pbxproj(text)["objects"], parse_pbxproj(edited)["objects"]
    appended = {found["group_id"]: "children"}
    appended.update({p: "files" for p in before[found["target_id"]]["buildPhases"]})
    for oid, obj in before.items():
        if oid in appended:
            key = appended[oid]
            assert after[oid][key][:len(obj[key])] == obj[key]
            assert {k: v for k, v in after[oid].items() if k != key} == {k: v for k, v in obj.items() if k != key}
        else:
            assert after[oid] == obj, oid
    assert "0A00000000000000000000A0" in after["0A0000000000000000000031"]["files"]
    refs = {after[c]["path"]: c for c in after[found["group_id"]]["children"]}
    sources = next(after[p] for p in after[found["target_id"]]["buildPhases"]
                   if after[p]["isa"] == "PBXSourcesBuildPhase")
    assert {refs["Net.mlpackage"], refs[NET_SWIFT]} <= {after[b]["fileRef"] for b in sources["files"]}


def test_synchronized_folder_project_detected(tmp_path):
    app = _synchronized_app(tmp_path)
    found = find_xcode_project(app)
    assert found["synchronized"] is True and found["source_dir"] == app / "MyApp"


def test_ios_not_an_app_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitdeployError) as e:
        find_xcode_project(tmp_path / "empty")
    assert "no *.xcodeproj" in _one_line_error(e)


# ----------------------------------------------------------------------------- fast: Android projects


def test_find_android_app_in_harness(tmp_path):
    root = _copy(ANDROID_HARNESS, tmp_path)
    for where in (root, root / "app"):
        app = find_android_app(where)
        assert app["module_dir"] == root / "app"
        assert app["package"] == "com.vitdeploy.harness"
        assert app["source_dir"] == root / "app/src/main/java/com/vitdeploy/harness"
        assert app["no_compress"] and app["litert"]


def test_find_android_app_groovy_manifest_package_and_missing_no_compress(tmp_path):
    module = tmp_path / "proj" / "mobile"
    (module / "src/main/kotlin/org/example/cam").mkdir(parents=True)
    (module / "build.gradle").write_text("plugins { id 'com.android.application' }\n"
                                         "android {\n  // noCompress 'tflite' is only a comment here\n}\n")
    (module / "src/main/AndroidManifest.xml").write_text('<manifest package="org.example.cam"/>\n')
    app = find_android_app(tmp_path / "proj")
    assert app["package"] == "org.example.cam"
    assert app["source_dir"] == module / "src/main/kotlin/org/example/cam"  # existing kotlin/ dir preferred
    assert not app["no_compress"] and not app["litert"]


def test_android_not_an_app_folder(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "build.gradle.kts").write_text("plugins { id(\"com.android.library\") }\n")
    with pytest.raises(VitdeployError) as e:
        find_android_app(tmp_path)
    assert "not an Android app" in _one_line_error(e)


# ----------------------------------------------------------------------------- fast: argument errors


def test_bad_arguments_give_one_line_errors(tmp_path):
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"\0" * 64)
    mlpackage = tmp_path / "m.mlpackage"
    mlpackage.mkdir()
    (mlpackage / "Manifest.json").write_text("{}")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    cases = [
        (dict(artifact=tflite, platform="ios", out=tmp_path / "o"), "TFLite model"),
        (dict(artifact=mlpackage, platform="android", out=tmp_path / "o"), "Core ML model"),
        (dict(artifact=text, platform="android", out=tmp_path / "o"), "not a .tflite"),
        (dict(artifact=text, platform="ios", out=tmp_path / "o"), "not a Core ML .mlpackage"),
        (dict(artifact=tmp_path / "missing.tflite", platform="android", out=tmp_path / "o"), "no such file"),
        (dict(artifact=tflite, platform="android"), "exactly one of"),
        (dict(artifact=tflite, platform="android", into=tmp_path, out=tmp_path / "o"), "exactly one of"),
        (dict(artifact=tflite, platform="windows", out=tmp_path / "o"), "unknown platform"),
        (dict(artifact=tflite, platform="android", out=tmp_path / "o", top_k=0), "top-k"),
    ]
    for kwargs, expected in cases:
        artifact = kwargs.pop("artifact")
        with pytest.raises(VitdeployError) as e:
            package(artifact, **kwargs)
        assert expected in _one_line_error(e), (kwargs, str(e.value))
    assert not (tmp_path / "o").exists()


def test_infer_platform():
    assert infer_platform("a/m.mlpackage") == "ios" and infer_platform("m.TFLITE") == "android"
    with pytest.raises(VitdeployError):
        infer_platform("model.onnx")


def test_garbage_tflite_is_rejected(tmp_path):
    pytest.importorskip("ai_edge_litert")
    bad = tmp_path / "m.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(VitdeployError) as e:
        package(bad, platform="android", out=tmp_path / "o")
    assert "not a readable" in _one_line_error(e)
    assert not (tmp_path / "o").exists()


def test_kotlin_helper_rejects_bad_package_name():
    info = {"width": 8, "height": 8, "num_classes": 2, "preprocessing": None}
    with pytest.raises(VitdeployError):
        kotlin_helper(info, package_name="com.example.1bad", model_asset="m.tflite", labels_asset=None, top_k=5,
                      class_name="MClassifier")
    source = kotlin_helper(info, package_name="com.example.ok", model_asset='we"ird$.tflite',
                           labels_asset=None, top_k=3, class_name="WeirdClassifier")
    assert "class WeirdClassifier @JvmOverloads constructor(" in source and "VitdeployClassifier" not in source
    assert 'const val MODEL_ASSET = "we\\"ird\\$.tflite"' in source
    assert "val LABELS_ASSET: String? = null" in source and "@@" not in source


def test_existing_reference_without_target_membership_gets_a_build_file(tmp_path):
    app = _copy(IOS_HARNESS, tmp_path)
    found = find_xcode_project(app)
    files = [(NET_SWIFT, "source")]
    text = add_files_to_pbxproj(found["pbx_text"], found["target_id"], found["group_id"], files)
    # The user unticks the target: the build-file line goes, the file reference stays.
    unticked = "\n".join(line for line in text.splitlines()
                          if f"{NET_SWIFT} in Sources" not in line) + "\n"
    assert _ids_consistent(unticked) == []
    again = add_files_to_pbxproj(unticked, found["target_id"], found["group_id"], files)
    assert _ids_consistent(again) == []
    assert again.count(f"/* {NET_SWIFT} */ = {{isa = PBXFileReference") == 1  # no second reference
    assert again.count(f"{NET_SWIFT} in Sources */ = {{isa = PBXBuildFile") == 1


def test_model_named_like_the_helper_is_refused(tmp_path):
    model = tmp_path / "Net.mlpackage"
    model.mkdir()
    (model / "Manifest.json").write_text("{}")
    with pytest.raises(VitdeployError) as e:
        package(model, platform="ios", out=tmp_path / "o", class_name="Net")  # Xcode's class for Net.mlpackage
    assert "clashes with the helper class Net" in _one_line_error(e)
    assert not (tmp_path / "o").exists()


SWIFT_INFO = {"input_name": "image", "width": 256, "height": 224, "color_layout": "BGR", "classifier": False,
              "logits_output": "logits", "labels": None, "precision": "fp32",
              "preprocessing": {"resize": 288, "crop": 256}}


def test_swift_helper_structure():
    swift = swift_helper(SWIFT_INFO, model_name="MobileViT_XXS", labels_resource="MobileViT_XXS_labels.txt", top_k=4,
                         class_name="MobileViTXXSClassifier")
    assert "@@" not in swift
    assert swift.startswith("// Generated by `vitdeploy package` for the model MobileViT_XXS.mlpackage\n")
    assert "public final class MobileViTXXSClassifier {" in swift and "VitdeployClassifier" not in swift
    assert 'public static let modelName = "MobileViT_XXS"' in swift
    assert 'bundle.url(forResource: MobileViTXXSClassifier.modelName, withExtension: "mlmodelc")' in swift
    assert 'public static let inputName = "image"' in swift
    assert "public static let inputWidth = 256" in swift and "public static let inputHeight = 224" in swift
    assert "public static let cropFraction: Double = 0.8888888888888888" in swift
    assert "computeUnits: MLComputeUnits = .cpuAndGPU" in swift  # fp32 models stay off the Neural Engine
    assert "public static let defaultTopK = 4" in swift
    no_labels = swift_helper(dict(SWIFT_INFO, precision="fp16"), model_name="M", labels_resource=None, top_k=5,
                             class_name="MClassifier")
    assert "public static let labelsResource: String? = nil" in no_labels
    assert "computeUnits: MLComputeUnits = .all" in no_labels


def test_swift_helper_parses_as_swift():
    """Syntax check with the tree-sitter Swift grammar (pip install tree-sitter tree-sitter-swift)."""
    tree_sitter = pytest.importorskip("tree_sitter")
    tree_sitter_swift = pytest.importorskip("tree_sitter_swift")
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))

    def errors(source: str) -> list:
        found, stack = [], [parser.parse(source.encode()).root_node]
        while stack:
            node = stack.pop()
            if node.type == "ERROR" or node.is_missing:
                found.append((node.start_point, source.encode()[node.start_byte:node.end_byte][:60]))
            stack.extend(node.children)
        return found

    for info, labels in ((SWIFT_INFO, "M_labels.txt"), (dict(SWIFT_INFO, classifier=True, logits_output=None), None)):
        for class_name in ("MClassifier", "M_2"):
            assert errors(swift_helper(info, model_name="M", labels_resource=labels, top_k=5,
                                       class_name=class_name)) == []
    assert errors("let x = = 3\nfunc f( {\n") != []  # the check can fail


# ----------------------------------------------------------------------------- slow: real artifacts


@pytest.fixture(scope="module")
def tflite_model(tmp_path_factory):
    pytest.importorskip("litert_torch")
    from vitdeploy.checkpoints import preprocessing_for
    from vitdeploy.passes import fold_batchnorm
    from vitdeploy.synthetic import seeded_model
    from vitdeploy.targets.tflite import convert_tflite

    model = seeded_model("mobilevit_xxs")
    fold_batchnorm(model)
    out = tmp_path_factory.mktemp("tflite") / "mobilevit_xxs.tflite"
    convert_tflite(model, input_size=(3, 256, 256), preprocessing=preprocessing_for("mobilevit", "hf"),
                   out=out, labels=LABELS)
    return out


def _tiny_torch_model():
    import torch

    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
            self.fc = torch.nn.Linear(8, len(TINY_LABELS))

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    return Tiny().eval()


@pytest.fixture(scope="module")
def mlpackages(tmp_path_factory):
    """{"labels": classifier .mlpackage with labels, "logits": logits-only .mlpackage}.

    Made with vitdeploy's convert_coreml when it works, else straight from coremltools
    (torch.export + ct.convert, ImageType input ``image``) -- the packager must handle both.
    """
    ct = pytest.importorskip("coremltools")
    import torch

    from vitdeploy.checkpoints import preprocessing_for
    from vitdeploy.errors import ConversionError

    folder = tmp_path_factory.mktemp("coreml")
    result = {}
    try:
        from vitdeploy.targets.coreml import convert_coreml

        for key, labels in (("labels", TINY_LABELS), ("logits", None)):
            out = folder / f"Tiny_{key}.mlpackage"
            convert_coreml(_tiny_torch_model(), input_size=(3, 64, 64), preprocessing=preprocessing_for("levit", "official"),
                           out=out, labels=labels, count_before=False)
            result[key] = out
        result["source"] = "convert_coreml"
    except (ImportError, ConversionError):
        exported = torch.export.export(_tiny_torch_model(), (torch.rand(1, 3, 64, 64),)).run_decompositions({})
        image = ct.ImageType(name="image", shape=(1, 3, 64, 64), scale=1 / 255, bias=[0, 0, 0],
                             color_layout=ct.colorlayout.RGB)
        common = dict(inputs=[image], convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16)
        classifier = ct.convert(exported, classifier_config=ct.ClassifierConfig(TINY_LABELS), **common)
        # The metadata convert_coreml writes (user_defined_metadata "vitdeploy" JSON + flat keys).
        config = {"format": 1, "labels": TINY_LABELS, "preprocessing": preprocessing_for("levit", "official").to_dict(),
                  "precision": "fp16"}
        classifier.user_defined_metadata.update({"vitdeploy": json.dumps(config), "precision": "fp16"})
        classifier.save(str(folder / "Tiny_labels.mlpackage"))
        plain = ct.convert(exported, outputs=[ct.TensorType(name="logits")], **common)
        plain.save(str(folder / "Tiny_logits.mlpackage"))
        result = {"labels": folder / "Tiny_labels.mlpackage", "logits": folder / "Tiny_logits.mlpackage",
                  "source": "coremltools"}
    return result


def _written(report) -> dict[str, int]:
    return {Path(w["path"]).name: w["bytes"] for w in report.written}


@pytest.mark.slow
def test_android_into_harness_copy(tflite_model, tmp_path):
    from vitdeploy.formats.tflite import read_tflite_metadata

    root = _copy(ANDROID_HARNESS, tmp_path)
    build_before = (root / "app/build.gradle.kts").read_text()
    report = package(tflite_model, platform="android", into=root, top_k=3)
    assets = root / "app/src/main/assets"
    helper = root / "app/src/main/java/com/vitdeploy/harness" / TFLITE_KT
    assert (assets / tflite_model.name).read_bytes() == tflite_model.read_bytes()
    assert read_tflite_metadata(assets / tflite_model.name)["labels"] == LABELS  # metadata + labels kept
    assert (assets / TFLITE_LABELS).read_text().splitlines() == LABELS
    source = helper.read_text()
    assert source.startswith("// Generated by `vitdeploy package` for the model mobilevit_xxs.tflite\n")
    assert "package com.vitdeploy.harness\n" in source and "class MobilevitXxsClassifier @JvmOverloads" in source
    assert 'val LABELS_ASSET: String? = "mobilevit_xxs_labels.txt"' in source
    assert "const val INPUT_WIDTH = 256" in source and "const val INPUT_HEIGHT = 256" in source
    assert "const val NUM_CLASSES = 1000" in source and "const val TOP_K = 3" in source
    assert "const val CROP_FRACTION = 0.8888889f" in source  # MobileViT: crop 256 of 288
    assert "@@" not in source
    assert _written(report) == {tflite_model.name: tflite_model.stat().st_size,
                                TFLITE_LABELS: (assets / TFLITE_LABELS).stat().st_size,
                                TFLITE_KT: helper.stat().st_size}
    assert report.warnings == []  # the harness keeps .tflite uncompressed and depends on LiteRT
    assert (root / "app/build.gradle.kts").read_text() == build_before
    assert not list(assets.glob(".*"))  # no temporary files left behind

    # Same again: identical files are skipped, nothing is rewritten.
    again = package(tflite_model, platform="android", into=root, top_k=3)
    assert again.written == [] and len(again.skipped) == 3
    # A different helper (top_k) must not overwrite without force; nothing at all is written then.
    helper.write_text(source + "// my edit\n")
    with pytest.raises(VitdeployError) as e:
        package(tflite_model, platform="android", into=root, top_k=5)
    assert TFLITE_KT in _one_line_error(e) and "--force" in str(e.value)
    assert helper.read_text().endswith("// my edit\n")
    forced = package(tflite_model, platform="android", into=root, top_k=5, force=True)
    assert _written(forced) == {TFLITE_KT: helper.stat().st_size}
    assert "const val TOP_K = 5" in helper.read_text()


@pytest.mark.slow
def test_android_reports_missing_no_compress(tflite_model, tmp_path):
    root = _copy(ANDROID_HARNESS, tmp_path)
    build = root / "app/build.gradle.kts"
    text = build.read_text()
    stripped = re.sub(r"\n    // \.tflite files must stay.*?\n    androidResources \{\n.*?\n    \}\n", "\n", text, flags=re.S)
    assert "noCompress" not in stripped
    build.write_text(stripped)
    report = package(tflite_model, platform="android", into=root)
    assert any('androidResources { noCompress += "tflite" }' in w for w in report.warnings)
    assert build.read_text() == stripped  # the user's build file is reported on, never rewritten


@pytest.mark.slow
def test_android_out_mode(tflite_model, tmp_path):
    out = tmp_path / "bundle"
    report = package(tflite_model, platform="android", out=out, android_package="org.example.cam")
    assert set(_written(report)) == {tflite_model.name, TFLITE_LABELS, TFLITE_KT, "README.md"}
    assert "package org.example.cam\n" in (out / TFLITE_KT).read_text()
    readme = (out / "README.md").read_text()
    assert f"`{TFLITE_KT}` -> your sources (class `MobilevitXxsClassifier`)" in readme
    assert "val classifier = MobilevitXxsClassifier(context)" in readme
    assert 'noCompress += "tflite"' in readme and "app/src/main/assets/" + tflite_model.name in readme
    with pytest.raises(VitdeployError):
        package(tflite_model, platform="android", out=out, android_package="org.other")


@pytest.mark.slow
def test_android_into_plain_module_with_groovy_build(tflite_model, tmp_path):
    module = tmp_path / "cam"
    (module / "src/main").mkdir(parents=True)
    (module / "build.gradle").write_text("plugins { id 'com.android.application' }\nandroid { namespace 'org.example.cam' }\n")
    (module / "src/main/AndroidManifest.xml").write_text("<manifest/>\n")
    report = package(tflite_model, platform="android", into=module)
    assert (module / "src/main/java/org/example/cam" / TFLITE_KT).is_file()
    assert any("noCompress 'tflite'" in w for w in report.warnings)
    assert any("com.google.ai.edge.litert:litert" in w for w in report.warnings)


# --- the Kotlin helper on the JVM ------------------------------------------------------------

JAVA_STUBS = {
    "android/content/Context.java": """
        package android.content;
        import android.content.res.AssetManager;
        public class Context {
            private final AssetManager assets;
            public Context(AssetManager assets) { this.assets = assets; }
            public AssetManager getAssets() { return assets; }
        }""",
    "android/content/res/AssetManager.java": """
        package android.content.res;
        import java.io.*;
        public final class AssetManager {
            private final File root; private final boolean compressed;
            public AssetManager(File root, boolean compressed) { this.root = root; this.compressed = compressed; }
            public AssetFileDescriptor openFd(String name) throws IOException {
                if (compressed) throw new FileNotFoundException("This file can not be opened as a file descriptor; it is probably compressed");
                File f = new File(root, name);
                if (!f.isFile()) throw new FileNotFoundException(name);
                return new AssetFileDescriptor(f);
            }
            public InputStream open(String name) throws IOException { return new FileInputStream(new File(root, name)); }
        }""",
    "android/content/res/AssetFileDescriptor.java": """
        package android.content.res;
        import java.io.*;
        public class AssetFileDescriptor implements Closeable {
            private final RandomAccessFile file; private final long length;
            AssetFileDescriptor(File f) throws IOException { file = new RandomAccessFile(f, "r"); length = f.length(); }
            public FileDescriptor getFileDescriptor() {
                try { return file.getFD(); } catch (IOException e) { throw new RuntimeException(e); }
            }
            public long getStartOffset() { return 0; }
            public long getDeclaredLength() { return length; }
            public void close() throws IOException { file.close(); }
        }""",
    "android/os/Build.java": """
        package android.os;
        public class Build { public static class VERSION { public static final int SDK_INT = 34; } }""",
    "android/graphics/Bitmap.java": """
        package android.graphics;
        public final class Bitmap {
            public enum Config { ALPHA_8, RGB_565, ARGB_8888, HARDWARE }
            private final int width, height; private final int[] argb; private final Config config;
            private Bitmap(int w, int h, int[] argb, Config c) { width = w; height = h; this.argb = argb; config = c; }
            public static Bitmap createBitmap(int[] colors, int width, int height, Config config) {
                return new Bitmap(width, height, colors.clone(), config);
            }
            public static Bitmap createBitmap(Bitmap src, int x, int y, int w, int h) {
                if (x < 0 || y < 0 || x + w > src.width || y + h > src.height) throw new IllegalArgumentException("crop outside");
                int[] out = new int[w * h];
                for (int r = 0; r < h; r++) for (int c = 0; c < w; c++) out[r * w + c] = src.argb[(y + r) * src.width + x + c];
                return new Bitmap(w, h, out, src.config);
            }
            /** Nearest-neighbour stand-in for Android's filtered scaling (test_package replicates it). */
            public static Bitmap createScaledBitmap(Bitmap src, int w, int h, boolean filter) {
                int[] out = new int[w * h];
                for (int r = 0; r < h; r++) for (int c = 0; c < w; c++) {
                    int sr = Math.min(src.height - 1, (int) ((r + 0.5) * src.height / h));
                    int sc = Math.min(src.width - 1, (int) ((c + 0.5) * src.width / w));
                    out[r * w + c] = src.argb[sr * src.width + sc];
                }
                return new Bitmap(w, h, out, src.config);
            }
            public int getWidth() { return width; }
            public int getHeight() { return height; }
            public Config getConfig() { return config; }
            public Bitmap copy(Config c, boolean mutable) { return new Bitmap(width, height, argb.clone(), c); }
            public void getPixels(int[] pixels, int offset, int stride, int x, int y, int w, int h) {
                for (int r = 0; r < h; r++) for (int c = 0; c < w; c++) pixels[offset + r * stride + c] = argb[(y + r) * width + x + c];
            }
        }""",
    "org/tensorflow/lite/DataType.java": """
        package org.tensorflow.lite;
        public enum DataType { FLOAT32, INT32, UINT8, INT64, STRING, BOOL, INT16, INT8 }""",
    "org/tensorflow/lite/Tensor.java": """
        package org.tensorflow.lite;
        public interface Tensor {
            DataType dataType(); int numBytes(); int[] shape(); QuantizationParams quantizationParams();
            class QuantizationParams {
                private final float scale; private final int zeroPoint;
                public QuantizationParams(float scale, int zeroPoint) { this.scale = scale; this.zeroPoint = zeroPoint; }
                public float getScale() { return scale; }
                public int getZeroPoint() { return zeroPoint; }
            }
        }""",
    "org/tensorflow/lite/Interpreter.java": """
        package org.tensorflow.lite;
        import java.io.*;
        import java.nio.ByteBuffer;
        import java.nio.file.*;
        /** Records what the helper feeds it and answers with logits prepared by the test. */
        public final class Interpreter implements AutoCloseable {
            public static class Options { int threads; public Options setNumThreads(int n) { threads = n; return this; } }
            private final Path dir = Paths.get(System.getProperty("stub.dir"));
            public Interpreter(ByteBuffer model, Options options) {
                byte[] head = new byte[8];
                model.duplicate().get(head);
                if (head[4] != 'T' || head[5] != 'F' || head[6] != 'L' || head[7] != '3') throw new IllegalArgumentException("not a tflite model");
                write("model_bytes.txt", (Integer.toString(model.capacity()) + " " + options.threads).getBytes());
            }
            private Tensor spec(String file) {
                final String[] f;
                try { f = new String(Files.readAllBytes(dir.resolve(file))).trim().split(" "); } catch (IOException e) { throw new UncheckedIOException(e); }
                final DataType type = DataType.valueOf(f[0]);
                final int[] shape = new int[f.length - 3];
                int n = 1;
                for (int i = 0; i < shape.length; i++) { shape[i] = Integer.parseInt(f[i + 1]); n *= shape[i]; }
                final int bytes = n * (type == DataType.FLOAT32 ? 4 : 1);
                final Tensor.QuantizationParams q = new Tensor.QuantizationParams(Float.parseFloat(f[f.length - 2]), Integer.parseInt(f[f.length - 1]));
                return new Tensor() {
                    public DataType dataType() { return type; }
                    public int numBytes() { return bytes; }
                    public int[] shape() { return shape.clone(); }
                    public QuantizationParams quantizationParams() { return q; }
                };
            }
            public Tensor getInputTensor(int i) { return spec("input_spec.txt"); }
            public Tensor getOutputTensor(int i) { return spec("output_spec.txt"); }
            public void run(Object input, Object output) {
                ByteBuffer in = ((ByteBuffer) input).duplicate();
                byte[] data = new byte[in.remaining()];
                in.get(data);
                write("input.bin", data);
                try { ((ByteBuffer) output).put(Files.readAllBytes(dir.resolve("output.bin"))); } catch (IOException e) { throw new UncheckedIOException(e); }
            }
            public void close() {}
            private void write(String name, byte[] data) {
                try { Files.write(dir.resolve(name), data); } catch (IOException e) { throw new UncheckedIOException(e); }
            }
        }""",
}

KOTLIN_DRIVER = """
import android.content.Context
import android.content.res.AssetManager
import android.graphics.Bitmap
import com.vitdeploy.harness.MobilevitXxsClassifier
import java.io.File

fun main(args: Array<String>) {
    val dir = File(args[0])
    val lines = File(dir, "image.txt").readLines()
    val size = lines[0].split(" ")
    val pixels = lines[1].split(" ").map { it.toLong().toInt() }.toIntArray()
    val bitmap = Bitmap.createBitmap(pixels, size[0].toInt(), size[1].toInt(), Bitmap.Config.ARGB_8888)
    val classifier = MobilevitXxsClassifier(Context(AssetManager(File(args[1]), args[2] == "compressed")))
    val top = classifier.classify(bitmap, 3)
    classifier.close()
    File(dir, "result.txt").writeText(top.joinToString("\\n") { "${it.index}\\t${it.label}\\t${it.probability}" })
}
"""


@pytest.fixture(scope="module")
def kotlin_build(tflite_model, tmp_path_factory):
    """The generated helper + driver compiled against the Java stand-ins; returns a run function."""
    for tool in ("kotlinc", "javac", "java"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install -y kotlin default-jdk-headless)")
    work = tmp_path_factory.mktemp("kotlin")
    root = _copy(ANDROID_HARNESS, work)
    package(tflite_model, platform="android", into=root, top_k=3)
    stubs = work / "stubs"
    for rel, source in JAVA_STUBS.items():
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text(textwrap.dedent(source).strip() + "\n")
    classes = work / "classes"
    subprocess.run(["javac", "-d", str(classes), *map(str, stubs.rglob("*.java"))], check=True,
                   capture_output=True, text=True)
    (work / "Driver.kt").write_text(KOTLIN_DRIVER)
    jar = work / "helper.jar"
    helper = root / "app/src/main/java/com/vitdeploy/harness" / TFLITE_KT
    built = subprocess.run(["kotlinc", str(helper), str(work / "Driver.kt"), "-cp", str(classes),
                            "-include-runtime", "-d", str(jar)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    warnings = [line for line in built.stderr.splitlines() if TFLITE_KT in line and "warning" in line]
    assert warnings == [], warnings
    assets = root / "app/src/main/assets"

    def run(case: Path, compressed: bool) -> list[tuple[int, str, float]]:
        done = subprocess.run(["java", f"-Dstub.dir={case}", "-cp", f"{jar}:{classes}", "DriverKt", str(case),
                               str(assets), "compressed" if compressed else "mapped"],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        rows = [line.split("\t") for line in (case / "result.txt").read_text().splitlines()]
        return [(int(i), label, float(p)) for i, label, p in rows]

    return run, tflite_model


def _expected_crop(rgb: np.ndarray, size: int, fraction: float) -> np.ndarray:
    """Replicates the helper's centreCrop geometry (float32 math) with the stub's nearest scaling."""
    h, w = rgb.shape[:2]
    scale = np.float32(size) / (np.float32(min(w, h)) * np.float32(fraction))
    sw = max(size, int(np.floor(np.float32(w) * scale + np.float32(0.5))))
    sh = max(size, int(np.floor(np.float32(h) * scale + np.float32(0.5))))
    rows = np.minimum(h - 1, ((np.arange(sh) + 0.5) * h / sh).astype(int))
    cols = np.minimum(w - 1, ((np.arange(sw) + 0.5) * w / sw).astype(int))
    scaled = rgb[rows][:, cols]
    top, left = (sh - size) // 2, (sw - size) // 2
    return scaled[top:top + size, left:left + size]


def _write_case(case: Path, rgb: np.ndarray, input_spec: str, output_spec: str, output: bytes) -> None:
    case.mkdir()
    h, w = rgb.shape[:2]
    argb = (0xFF << 24) | (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    (case / "image.txt").write_text(f"{w} {h}\n" + " ".join(str(int(v)) for v in argb.ravel()) + "\n")
    (case / "input_spec.txt").write_text(input_spec)
    (case / "output_spec.txt").write_text(output_spec)
    (case / "output.bin").write_bytes(output)


def _softmax_top(logits: np.ndarray, k: int) -> list[tuple[int, float]]:
    z = np.exp(logits.astype(np.float64) - logits.max())
    p = z / z.sum()
    order = sorted(range(len(p)), key=lambda i: (-p[i], i))[:k]
    return [(i, float(p[i])) for i in order]


@pytest.mark.slow
def test_kotlin_helper_runs_float_model(kotlin_build, tmp_path):
    """Mapped asset, float32 input: the helper feeds exactly the cropped RGB pixels, NHWC."""
    from vitdeploy.runtimes.tflite import TFLiteRunner

    run, tflite_model = kotlin_build
    rgb = np.random.default_rng(0).integers(0, 256, size=(300, 410, 3), dtype=np.uint8)
    expected_input = _expected_crop(rgb, 256, 256 / 288)
    logits = TFLiteRunner(tflite_model).predict_pixels(expected_input)[0]
    case = tmp_path / "float"
    _write_case(case, rgb, "FLOAT32 1 256 256 3 0 0", "FLOAT32 1 1000 0 0", logits.astype("<f4").tobytes())
    top = run(case, compressed=False)
    fed = np.frombuffer((case / "input.bin").read_bytes(), dtype="<f4").reshape(256, 256, 3)
    np.testing.assert_array_equal(fed, expected_input.astype(np.float32))
    assert (case / "model_bytes.txt").read_text() == f"{tflite_model.stat().st_size} 4"  # whole file mapped
    want = _softmax_top(logits, 3)
    assert [i for i, _, _ in top] == [i for i, _ in want]
    assert [label for _, label, _ in top] == [LABELS[i] for i, _ in want]
    np.testing.assert_allclose([p for _, _, p in top], [p for _, p in want], rtol=1e-5)


@pytest.mark.slow
def test_kotlin_helper_runs_int8_io_compressed(kotlin_build, tmp_path):
    """Compressed asset (copied, not mapped) and an int8-I/O interface: quantize in, dequantize out."""
    run, tflite_model = kotlin_build
    rgb = np.random.default_rng(1).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    scale_in, zp_in, scale_out, zp_out = 1.0, -128, 0.05, 3
    quantized_logits = np.random.default_rng(2).integers(-128, 128, size=1000).astype(np.int8)
    case = tmp_path / "int8"
    _write_case(case, rgb, f"INT8 1 256 256 3 {scale_in} {zp_in}", f"INT8 1 1000 {scale_out} {zp_out}",
                quantized_logits.tobytes())
    top = run(case, compressed=True)
    fed = np.frombuffer((case / "input.bin").read_bytes(), dtype=np.int8).reshape(256, 256, 3)
    expected = np.clip(_expected_crop(rgb, 256, 256 / 288).astype(np.int64) + zp_in, -128, 127)
    np.testing.assert_array_equal(fed, expected.astype(np.int8))
    assert (case / "model_bytes.txt").read_text() == f"{tflite_model.stat().st_size} 4"
    want = _softmax_top((quantized_logits.astype(np.float64) - zp_out) * scale_out, 3)
    assert [i for i, _, _ in top] == [i for i, _ in want]
    np.testing.assert_allclose([p for _, _, p in top], [p for _, p in want], rtol=1e-5)


# --- iOS with real .mlpackage files -----------------------------------------------------------


@pytest.mark.slow
def test_ios_into_harness_copy(mlpackages, tmp_path):
    app = _copy(IOS_HARNESS, tmp_path)
    model = mlpackages["labels"]
    report = package(model, platform="ios", into=app)
    src = app / "VitdeployHarness"
    assert (src / model.name / "Manifest.json").is_file()
    assert (src / "Tiny_labels_labels.txt").read_text().splitlines() == TINY_LABELS
    swift = (src / TINY_SWIFT).read_text()
    assert report.project_edit == "pbxproj"
    assert report.project["target_name"] == "VitdeployHarness" and "pbx_text" not in report.project
    json.dumps(report.to_dict())  # JSON-able for --json output
    names = set(_written(report))
    assert names == {model.name, "Tiny_labels_labels.txt", TINY_SWIFT, "project.pbxproj"}

    pbx_text = (app / "VitdeployHarness.xcodeproj/project.pbxproj").read_text()
    assert _ids_consistent(pbx_text) == [] and dangling_references(parse_pbxproj(pbx_text)) == []
    objects = parse_pbxproj(pbx_text)["objects"]
    paths = {o.get("path") for o in objects.values() if o.get("isa") == "PBXFileReference"}
    assert {model.name, "Tiny_labels_labels.txt", TINY_SWIFT} <= paths
    # Swift helper: structure (it cannot be compiled on Linux).
    assert 'public static let modelName = "Tiny_labels"' in swift
    assert "public final class TinyLabelsClassifier {" in swift
    assert any("let classifier = try TinyLabelsClassifier()" in step for step in report.next_steps)
    assert 'public static let inputName = "image"' in swift
    assert "public static let inputWidth = 64" in swift and "public static let inputHeight = 64" in swift
    assert 'public static let labelsResource: String? = "Tiny_labels_labels.txt"' in swift
    assert "public static let isClassifier = true" in swift
    assert "public static let cropFraction: Double = 0.875" in swift  # LeViT preprocessing: crop 224 of 256
    assert "computeUnits: MLComputeUnits = .all" in swift  # float16 model
    assert "func classify(_ pixelBuffer: CVPixelBuffer" in swift and "VNCoreMLRequest" in swift
    assert "configuration.computeUnits = computeUnits" in swift and "@@" not in swift
    assert swift.count("{") == swift.count("}") and swift.count("(") == swift.count(")")
    # No second copy on re-run, no overwrite of a user's change without force.
    again = package(model, platform="ios", into=app)
    assert again.written == [] and again.project_edit == "none"
    assert (app / "VitdeployHarness.xcodeproj/project.pbxproj").read_text() == pbx_text
    (src / TINY_SWIFT).write_text(swift.replace("defaultTopK = 5", "defaultTopK = 2"))
    with pytest.raises(VitdeployError) as e:
        package(model, platform="ios", into=app)
    assert TINY_SWIFT in _one_line_error(e)
    forced = package(model, platform="ios", into=app, force=True)
    assert set(_written(forced)) == {TINY_SWIFT}
    assert (app / "VitdeployHarness.xcodeproj/project.pbxproj").read_text() == pbx_text


@pytest.mark.slow
def test_ios_logits_model_out_mode(mlpackages, tmp_path):
    model = mlpackages["logits"]
    report = package(model, platform="ios", out=tmp_path / "out", top_k=3)
    names = set(_written(report))
    labels_file = "Tiny_logits_labels.txt"
    assert names == {model.name, "TinyLogitsClassifier.swift", "README.md"}  # no labels in the model: no labels file
    assert not (tmp_path / "out" / labels_file).exists()
    assert any("no labels" in w for w in report.warnings)
    swift = (tmp_path / "out" / "TinyLogitsClassifier.swift").read_text()
    assert "public static let isClassifier = false" in swift
    assert 'public static let logitsOutput = "logits"' in swift and "softmax" in swift
    assert "public static let defaultTopK = 3" in swift
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "Tiny_logits.mlpackage" in readme and "let classifier = try TinyLogitsClassifier()" in readme


@pytest.mark.slow
def test_ios_synchronized_folder_drops_files(mlpackages, tmp_path):
    app = _synchronized_app(tmp_path)
    before = (app / "MyApp.xcodeproj/project.pbxproj").read_text()
    report = package(mlpackages["labels"], platform="ios", into=app)
    assert report.project_edit == "synchronized-folder"
    assert (app / "MyApp" / TINY_SWIFT).is_file() and (app / "MyApp" / mlpackages["labels"].name).is_dir()
    assert (app / "MyApp.xcodeproj/project.pbxproj").read_text() == before
    assert "project.pbxproj" not in _written(report)


@pytest.mark.slow
def test_ios_into_broken_project_writes_nothing(mlpackages, tmp_path):
    app = _copy(IOS_HARNESS, tmp_path)
    pbxproj = app / "VitdeployHarness.xcodeproj/project.pbxproj"
    text = pbxproj.read_text()
    child = "0A0000000000000000000010 /* VitdeployHarnessApp.swift */,"
    for broken, expected in ((text.replace("isa = PBXGroup;", "isa = PBXGroup", 1), "cannot parse"),
                             (text.replace(child, child + "\n\t\t\t\t0A00000000000000000000FF /* gone.swift */,", 1),
                              "does not define")):
        pbxproj.write_text(broken)
        before = sorted(p.relative_to(app) for p in app.rglob("*"))
        with pytest.raises(VitdeployError) as e:
            package(mlpackages["labels"], platform="ios", into=app)
        assert expected in _one_line_error(e)
        assert sorted(p.relative_to(app) for p in app.rglob("*")) == before
        assert pbxproj.read_text() == broken


@pytest.mark.slow
def test_ios_model_name_must_be_an_identifier(mlpackages, tmp_path):
    renamed = tmp_path / "my-model.mlpackage"
    shutil.copytree(mlpackages["labels"], renamed)
    with pytest.raises(VitdeployError) as e:
        package(renamed, platform="ios", out=tmp_path / "o")
    assert "not a valid identifier" in _one_line_error(e)


# ----------------------------------------------------------------------------- ExecuTorch .pte

from pte_fixtures import NUM_CLASSES, write_tiny_pte  # noqa: E402

from vitdeploy.formats.executorch import RUNTIME_VERSION, read_pte_metadata  # noqa: E402
from vitdeploy.packaging.codegen import kotlin_helper, swift_pte_helper  # noqa: E402

PTE_META = {"labels": TINY_LABELS, "preprocessing": {"resize": 9, "crop": 8}, "precision": "fp32"}


@pytest.fixture(scope="module")
def pte_model(tmp_path_factory) -> Path:
    pytest.importorskip("executorch")
    return write_tiny_pte(tmp_path_factory.mktemp("pte") / "tiny_vit.pte", metadata=PTE_META)


def _swift_syntax_errors(source: str) -> list:
    tree_sitter = pytest.importorskip("tree_sitter")
    tree_sitter_swift = pytest.importorskip("tree_sitter_swift")
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))
    found, stack = [], [parser.parse(source.encode()).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            found.append((node.start_point, source.encode()[node.start_byte:node.end_byte][:60]))
        stack.extend(node.children)
    return found


def test_pte_suffix_matches_the_harness_protocol():
    from vitdeploy import packaging
    from vitdeploy.devices.protocol import MODEL_SUFFIXES
    from vitdeploy.formats import FORMATS, executorch

    assert packaging.PTE_SUFFIX == executorch.PTE_SUFFIX == FORMATS["executorch"].suffix == ".pte"
    assert all(packaging.PTE_SUFFIX in s for s in MODEL_SUFFIXES.values())


def test_pte_bad_input_gives_one_line_errors(tmp_path):
    fake = tmp_path / "m.pte"
    fake.write_bytes(b"definitely not a program")
    folder = tmp_path / "m_dir.pte"
    folder.mkdir()
    cases = [
        (dict(artifact=fake, out=tmp_path / "o"), infer_platform, "a .pte runs on ios and android; pass --platform"),
        (dict(artifact=fake, platform="android", out=tmp_path / "o"), None, "m.pte: not an ExecuTorch program"),
        (dict(artifact=fake, platform="ios", out=tmp_path / "o"), None, "m.pte: not an ExecuTorch program"),
        (dict(artifact=folder, platform="ios", out=tmp_path / "o"), None, "is not a .pte file"),
        (dict(artifact=tmp_path / "missing.pte", platform="android", out=tmp_path / "o"), None, "no such file"),
    ]
    for kwargs, via, expected in cases:
        artifact = kwargs.pop("artifact")
        with pytest.raises(VitdeployError) as e:
            infer_platform(artifact) if via else package(artifact, **kwargs)
        assert expected in _one_line_error(e), (kwargs, str(e.value))
    assert not (tmp_path / "o").exists()


def test_pte_bad_metadata_is_refused_and_none_is_warned_about(tmp_path):
    pytest.importorskip("executorch")
    bad = write_tiny_pte(tmp_path / "bad.pte", metadata="{not json")
    with pytest.raises(VitdeployError) as e:
        package(bad, platform="android", out=tmp_path / "o")
    assert "bad.pte: damaged vitdeploy metadata (not JSON" in _one_line_error(e)
    miscounted = write_tiny_pte(tmp_path / "miscounted.pte", metadata={"labels": ["a", "b"]})
    with pytest.raises(VitdeployError) as e:
        package(miscounted, platform="ios", out=tmp_path / "o")
    assert f"miscounted.pte: damaged vitdeploy metadata (2 labels for {NUM_CLASSES} classes)" in _one_line_error(e)
    assert not (tmp_path / "o").exists()
    # No metadata (a .pte not written by vitdeploy convert): packaged, with what the helper assumes said.
    plain = write_tiny_pte(tmp_path / "plain.pte", size=8)  # NHWC pixels: fine; an NCHW program is not
    for platform in ("android", "ios"):
        report = package(plain, platform=platform, out=tmp_path / platform)
        assert report.written and not list((tmp_path / platform).glob("*labels.txt"))
        assert any(w.startswith("not written by vitdeploy convert: no preprocessing/labels metadata; the helper "
                                "assumes RGB pixels 0..255") for w in report.warnings), report.warnings
        assert "the model carries no labels: results are named by class index" in report.warnings


def test_pte_android_out_mode_copies_the_program_with_its_metadata(pte_model, tmp_path):
    report = package(pte_model, platform="android", out=tmp_path / "o", top_k=3, android_package="org.example.app")
    out = tmp_path / "o"
    assert sorted(p.name for p in out.iterdir()) == sorted(["tiny_vit.pte", PTE_LABELS, PTE_KT, "README.md"])
    assert (out / "tiny_vit.pte").read_bytes() == pte_model.read_bytes()  # metadata and all: one file
    assert read_pte_metadata(out / "tiny_vit.pte")["vitdeploy"]["preprocessing"] == PTE_META["preprocessing"]
    assert (out / PTE_LABELS).read_text().splitlines() == TINY_LABELS
    kt = (out / PTE_KT).read_text()
    assert kt.splitlines()[3] == "package org.example.app" and "@@" not in kt
    assert "class TinyVitClassifier @JvmOverloads constructor(" in kt
    assert 'const val MODEL_ASSET = "tiny_vit.pte"' in kt and "const val NUM_CLASSES = 5" in kt
    assert "const val INPUT_WIDTH = 8" in kt and "const val CROP_FRACTION = 0.8888889f" in kt
    assert f"org.pytorch:executorch-android:{RUNTIME_VERSION}" in (out / "README.md").read_text()
    assert report.warnings == []
    # Same files again: nothing rewritten; a different file is refused without --force, and nothing written.
    again = package(pte_model, platform="android", out=out, top_k=3, android_package="org.example.app")
    assert again.written == [] and len(again.skipped) == 4
    (out / PTE_LABELS).write_text("other\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(VitdeployError) as e:
        package(pte_model, platform="android", out=out, top_k=4, android_package="org.example.app")
    assert f"{PTE_LABELS} already exists and differs; pass --force" in _one_line_error(e)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the new helper was not written either
    assert not list(out.glob(".*tmp*"))
    forced = package(pte_model, platform="android", out=out, top_k=4, android_package="org.example.app", force=True)
    assert sorted(Path(w["path"]).name for w in forced.written) == sorted([PTE_LABELS, PTE_KT, "README.md"])
    assert (out / PTE_LABELS).read_text().splitlines() == TINY_LABELS
    assert "const val TOP_K = 4" in (out / PTE_KT).read_text()


def test_pte_android_into_the_harness(pte_model, tmp_path):
    root = _copy(ANDROID_HARNESS, tmp_path)
    report = package(pte_model, platform="android", into=root)
    assets = root / "app/src/main/assets"
    assert (assets / "tiny_vit.pte").read_bytes() == pte_model.read_bytes()
    assert (assets / PTE_LABELS).read_text().splitlines() == TINY_LABELS
    assert not list(assets.glob("*.json"))  # no sidecar: the metadata is inside the .pte
    kt = (root / "app/src/main/java/com/vitdeploy/harness" / PTE_KT).read_text()
    assert "package com.vitdeploy.harness" in kt and "Module.load(modelFile(context, modelAsset).absolutePath" in kt
    assert report.warnings == []  # the harness already depends on executorch-android
    plain = tmp_path / "plain"
    (plain / "src/main").mkdir(parents=True)
    (plain / "src/main/AndroidManifest.xml").write_text('<manifest package="org.example.x"/>')
    (plain / "build.gradle").write_text("apply plugin: 'com.android.application'\nandroid { namespace 'org.example.x' }\n")
    report = package(pte_model, platform="android", into=plain)
    assert any(f"implementation 'org.pytorch:executorch-android:{RUNTIME_VERSION}'" in w for w in report.warnings)


def test_pte_kotlin_helper_calls_the_executorch_api():
    info = {"width": 256, "height": 224, "num_classes": 10, "labels": None, "preprocessing": None,
            "delegates": ["XnnpackBackend"]}
    kt = kotlin_helper(info, package_name="a.b", model_asset='m "x".pte', labels_asset=None, top_k=2,
                       class_name="MXClassifier", executorch=True)
    assert "@@" not in kt and 'const val MODEL_ASSET = "m \\"x\\".pte"' in kt
    for call in ("import org.pytorch.executorch.Module", "Module.LOAD_MODE_MMAP, numThreads)", 'module.loadMethod("forward")',
                 "Tensor.fromBlob(input, longArrayOf(1, INPUT_HEIGHT.toLong(), INPUT_WIDTH.toLong(), 3))",
                 "module.forward(EValue.from(tensor))[0].toTensor().dataAsFloatArray", "module.destroy()"):
        assert call in kt, call
    assert "val LABELS_ASSET: String? = null" in kt and "const val TOP_K = 2" in kt
    assert kt.count("{") == kt.count("}") and kt.count("(") == kt.count(")")
    with pytest.raises(VitdeployError, match="not a valid Kotlin package name"):
        kotlin_helper(info, package_name="1bad", model_asset="m.pte", labels_asset=None, top_k=2,
                      class_name="MClassifier", executorch=True)


def test_pte_swift_helper_parses_and_names_the_products():
    info = {"width": 256, "height": 224, "num_classes": 10, "labels": None, "preprocessing": {"resize": 256, "crop": 224},
            "delegates": ["XnnpackBackend"]}
    swift = swift_pte_helper(info, model_file="LeViT.pte", labels_resource="LeViT_labels.txt", top_k=3,
                             class_name="LeViTClassifier")
    assert "@@" not in swift and _swift_syntax_errors(swift) == []
    for call in ("import ExecuTorch", "Module(filePath: path)", 'try module.load("forward")',
                 "Tensor<Float>(pixels, shape: [1, LeViTClassifier.inputHeight, LeViTClassifier.inputWidth, 3])",
                 "try module.forward(input)", "let logits: Tensor<Float> = first.tensor()", "logits.scalars()",
                 'bundle.path(forResource: name, ofType: "pte")'):
        assert call in swift, call
    assert f"branch swiftpm-{RUNTIME_VERSION}" in swift and "backend_coreml" not in swift
    assert "public static let cropFraction: Double = 0.875" in swift
    coreml = swift_pte_helper(dict(info, delegates=["CoreMLBackend"]), model_file="M.pte", labels_resource=None, top_k=3,
                              class_name="MClassifier")
    assert "backend_xnnpack, backend_coreml" in coreml and "labelsResource: String? = nil" in coreml
    assert _swift_syntax_errors(coreml) == []


def test_pte_ios_into_the_harness_edits_the_project(pte_model, tmp_path):
    app = _copy(IOS_HARNESS, tmp_path)
    report = package(pte_model, platform="ios", into=app)
    assert report.project_edit == "pbxproj"
    src = app / "VitdeployHarness"
    assert (src / "tiny_vit.pte").read_bytes() == pte_model.read_bytes()
    assert (src / "tiny_vit_labels.txt").read_text().splitlines() == TINY_LABELS
    assert not list(src.glob("tiny_vit*.json"))  # no sidecar: the metadata is inside the .pte
    pbx_text = (app / "VitdeployHarness.xcodeproj/project.pbxproj").read_text()
    assert _ids_consistent(pbx_text) == [] and dangling_references(parse_pbxproj(pbx_text)) == []
    objects = parse_pbxproj(pbx_text)["objects"]
    refs = {o["path"]: oid for oid, o in objects.items() if o.get("isa") == "PBXFileReference"}
    assert objects[refs["tiny_vit.pte"]]["lastKnownFileType"] == "file"
    phase_of = {}
    for o in objects.values():
        if o.get("isa") in ("PBXResourcesBuildPhase", "PBXSourcesBuildPhase"):
            for b in o["files"]:
                phase_of[objects[b].get("fileRef")] = o["isa"]
    assert phase_of[refs["tiny_vit.pte"]] == phase_of[refs["tiny_vit_labels.txt"]] == "PBXResourcesBuildPhase"
    assert phase_of[refs[PTE_SWIFT]] == "PBXSourcesBuildPhase"
    # The harness project already has the ExecuTorch package (its test target), so no warning about it.
    assert not any("ExecuTorch Swift package" in w for w in report.warnings)
    # A second run changes nothing.
    again = package(pte_model, platform="ios", into=app)
    assert again.project_edit == "none" and again.written == []


def test_pte_ios_out_mode_says_what_to_add(pte_model, tmp_path):
    report = package(pte_model, platform="ios", out=tmp_path / "o")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(
        ["tiny_vit.pte", "tiny_vit_labels.txt", PTE_SWIFT, "README.md"])
    readme = (tmp_path / "o/README.md").read_text()
    assert f"branch swiftpm-{RUNTIME_VERSION}" in readme and "-all_load" in readme
    assert any("https://github.com/pytorch/executorch" in s for s in report.next_steps)
    assert "let classifier = try TinyVitClassifier()" in readme and f"`{PTE_SWIFT}` as a source" in readme
    assert _swift_syntax_errors((tmp_path / "o" / PTE_SWIFT).read_text()) == []


# ----------------------------------------------------------------------------- one helper class per model


def test_default_class_name_is_named_after_the_model():
    for name, expected in (("levit_128s_w8a8.tflite", "Levit128sW8a8Classifier"),
                           ("levit_128s_w8a8.below-target.tflite", "Levit128sW8a8Classifier"),
                           ("MobileViT_XXS.mlpackage", "MobileViTXXSClassifier"),
                           ("mobilevit-xxs.fp16.pte", "MobilevitXxsFp16Classifier"),
                           ("1st model.pte", "Model1stModelClassifier"),  # a leading digit is prefixed
                           ("é.pte", "ModelClassifier"),  # nothing left of the name
                           ("class.tflite", "ClassClassifier"),  # a keyword never stays one: the suffix
                           ("m\rfun pwned() {}\u2028.pte", "MFunPwnedClassifier")):  # odd characters dropped
        for platform in ("ios", "android"):
            assert default_class_name(name, platform) == expected, (name, platform)


def test_class_name_is_validated_for_the_platform(tmp_path):
    from click.testing import CliRunner

    from vitdeploy.cli import main

    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"\0" * 64)
    pte = tmp_path / "m.pte"
    pte.write_bytes(b"\0" * 64)
    cases = [(tflite, "android", bad) for bad in ("my-class", "1Net", "Net.Sub", "", "fun", "object", "Net\nX")]
    cases += [(pte, "ios", bad) for bad in ("my class", "9x", "Type", "struct", "Self", "Net\u2028")]
    for artifact, platform, bad in cases:
        result = CliRunner().invoke(main, ["package", str(artifact), "--platform", platform, "-o",
                                           str(tmp_path / "o"), "--class-name", bad])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, (bad, result.stderr)
        assert lines[0].startswith("error: class name") and "not a valid identifier" in lines[0], lines[0]
        assert ("Kotlin keyword" if platform == "android" else "Swift keyword") in lines[0]
    # Keywords of the other language are fine: Kotlin's "fun" is a Swift identifier, Swift's "struct" a Kotlin one.
    from vitdeploy.packaging.codegen import class_identifier

    assert class_identifier("fun", "ios") == "fun" and class_identifier("struct", "android") == "struct"
    assert not (tmp_path / "o").exists()


OTHER_LABELS = ["ant", "bee", "cow", "doe", "elk"]


@pytest.fixture(scope="module")
def other_pte(tmp_path_factory) -> Path:
    """A second model with its own labels: packaged next to tiny_vit.pte."""
    pytest.importorskip("executorch")
    meta = dict(PTE_META, labels=OTHER_LABELS)
    return write_tiny_pte(tmp_path_factory.mktemp("pte2") / "other-net.v2.pte", metadata=meta)


def _tree(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_models_into_one_android_app(pte_model, other_pte, tmp_path):
    root = _copy(ANDROID_HARNESS, tmp_path)
    first = package(pte_model, platform="android", into=root)
    second = package(other_pte, platform="android", into=root)
    assets, src = root / "app/src/main/assets", root / "app/src/main/java/com/vitdeploy/harness"
    assert set(_written(second)) == {other_pte.name, "other-net.v2_labels.txt", "OtherNetV2Classifier.kt"}
    assert not second.skipped  # nothing of the first model was touched
    for model, helper, labels, cls in ((pte_model, PTE_KT, PTE_LABELS, "TinyVitClassifier"),
                                       (other_pte, "OtherNetV2Classifier.kt", "other-net.v2_labels.txt",
                                        "OtherNetV2Classifier")):
        assert (assets / model.name).read_bytes() == model.read_bytes()
        kt = (src / helper).read_text()
        assert f"class {cls} @JvmOverloads constructor(" in kt
        assert f'const val MODEL_ASSET = "{model.name}"' in kt and f'val LABELS_ASSET: String? = "{labels}"' in kt
    assert (assets / PTE_LABELS).read_text().splitlines() == TINY_LABELS
    assert (assets / "other-net.v2_labels.txt").read_text().splitlines() == OTHER_LABELS
    assert any("val classifier = OtherNetV2Classifier(context)" in s for s in second.next_steps)
    assert any("val classifier = TinyVitClassifier(context)" in s for s in first.next_steps)

    # The same class for a different model: refused, naming both models, even with --force; nothing written.
    before = _tree(root)
    for force in (False, True):
        with pytest.raises(VitdeployError) as e:
            package(other_pte, platform="android", into=root, class_name="TinyVitClassifier", force=force)
        message = _one_line_error(e)
        assert "is the helper class of tiny_vit.pte, not of other-net.v2.pte" in message
        assert "--class-name" in message
        assert _tree(root) == before
    # The same model again: the --force / identical-file rules as before.
    assert package(pte_model, platform="android", into=root).written == []
    with pytest.raises(VitdeployError, match="already exists and differs; pass --force"):
        package(pte_model, platform="android", into=root, top_k=2)
    forced = package(pte_model, platform="android", into=root, top_k=2, force=True)
    assert set(_written(forced)) == {PTE_KT} and "const val TOP_K = 2" in (src / PTE_KT).read_text()
    # A chosen name: a third helper beside the other two.
    package(other_pte, platform="android", into=root, class_name="Birds")
    assert {p.name for p in src.glob("*.kt")} >= {PTE_KT, "OtherNetV2Classifier.kt", "Birds.kt"}
    assert "class Birds @JvmOverloads constructor(" in (src / "Birds.kt").read_text()


def test_two_models_into_one_ios_project(pte_model, other_pte, tmp_path):
    app = _copy(IOS_HARNESS, tmp_path)
    package(pte_model, platform="ios", into=app)
    second = package(other_pte, platform="ios", into=app)
    assert second.project_edit == "pbxproj"
    src = app / "VitdeployHarness"
    pbx_text = (app / "VitdeployHarness.xcodeproj/project.pbxproj").read_text()
    assert _ids_consistent(pbx_text) == [] and dangling_references(parse_pbxproj(pbx_text)) == []
    objects = parse_pbxproj(pbx_text)["objects"]
    refs = {o["path"]: oid for oid, o in objects.items() if o.get("isa") == "PBXFileReference"}
    sources = {objects[b]["fileRef"] for o in objects.values() if o.get("isa") == "PBXSourcesBuildPhase"
               for b in o["files"]}
    for model, helper, cls in ((pte_model, PTE_SWIFT, "TinyVitClassifier"),
                               (other_pte, "OtherNetV2Classifier.swift", "OtherNetV2Classifier")):
        assert (src / model.name).read_bytes() == model.read_bytes()
        swift = (src / helper).read_text()
        assert f"public final class {cls} {{" in swift and f"{cls}.numClasses" in swift
        assert "VitdeployClassifier" not in swift and _swift_syntax_errors(swift) == []
        assert refs[helper] in sources
    assert (src / "other-net.v2_labels.txt").read_text().splitlines() == OTHER_LABELS
    assert any("let classifier = try OtherNetV2Classifier()" in s for s in second.next_steps)

    before = _tree(app)
    with pytest.raises(VitdeployError) as e:
        package(other_pte, platform="ios", into=app, class_name="TinyVitClassifier", force=True)
    assert "TinyVitClassifier.swift is the helper class of tiny_vit.pte, not of other-net.v2.pte" in _one_line_error(e)
    assert _tree(app) == before  # neither the files nor project.pbxproj


def test_helper_owner_reads_the_model_back(tmp_path):
    from vitdeploy.packaging.codegen import helper_owner, same_model

    info = {"width": 8, "height": 8, "num_classes": 2, "preprocessing": None}
    name = "m\r\nx */.pte"
    path = tmp_path / "X.kt"
    path.write_text(kotlin_helper(info, package_name="a.b", model_asset=name, labels_asset=None, top_k=1,
                                  class_name="X", executorch=True))
    owner = helper_owner(path)
    assert owner is not None and same_model(owner, name) and not same_model(owner, "m.pte")
    assert same_model("net.below-target.tflite", "net.tflite")  # the same model, now on target
    path.write_text("// my own class\nclass X\n")
    assert helper_owner(path) is None  # not a vitdeploy helper: the --force rules decide
    assert helper_owner(tmp_path / "missing.kt") is None


@pytest.mark.slow
def test_two_mlpackages_into_one_ios_project(mlpackages, tmp_path):
    app = _copy(IOS_HARNESS, tmp_path)
    for key in ("labels", "logits"):
        package(mlpackages[key], platform="ios", into=app)
    src = app / "VitdeployHarness"
    for helper, cls, model in ((TINY_SWIFT, "TinyLabelsClassifier", "Tiny_labels"),
                               ("TinyLogitsClassifier.swift", "TinyLogitsClassifier", "Tiny_logits")):
        swift = (src / helper).read_text()
        assert f"public final class {cls} {{" in swift and f'public static let modelName = "{model}"' in swift
        assert _swift_syntax_errors(swift) == []
    pbx_text = (app / "VitdeployHarness.xcodeproj/project.pbxproj").read_text()
    assert _ids_consistent(pbx_text) == [] and dangling_references(parse_pbxproj(pbx_text)) == []
    with pytest.raises(VitdeployError, match="is the helper class of Tiny_labels.mlpackage, not of Tiny_logits"):
        package(mlpackages["logits"], platform="ios", into=app, class_name="TinyLabelsClassifier")
