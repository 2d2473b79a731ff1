plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// LiteRT 1.4.2 is the current Interpreter-API line (2.x keeps Interpreter for CPU only and
// moves GPU/NPU to CompiledModel); the harness needs XNNPACK thread counts, the GPU
// delegate and NNAPI side by side, which only the Interpreter API exposes.
val litert = "1.4.2"
// ExecuTorch's Android runtime (Module / Tensor / EValue) runs .pte requests. Pinned to the
// executorch the converter exports with (pyproject's [executorch] extra): a .pte needs a runtime
// at least as new as its exporter. The AAR bundles XNNPACK for arm64-v8a and x86_64 only, so an
// armeabi-v7a phone reports its .pte configs as errors (UnsatisfiedLinkError) and still runs .tflite.
// Not built here (no Android SDK); the version is checked against the exporter by tests/test_devices.py.
val executorch = "1.5.1"

android {
    namespace = "com.vitdeploy.harness"
    compileSdk = 35
    // r27 (LTS) builds the tiny CPU-affinity JNI library with 16 KB page alignment.
    ndkVersion = "27.2.12479018"

    defaultConfig {
        applicationId = "com.vitdeploy.harness"
        minSdk = 27 // NNAPI delegate and Debug.getMemoryInfo fields used here
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        // The test APK is com.vitdeploy.harness.test; android.py runs exactly this runner.
        testApplicationId = "com.vitdeploy.harness.test"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
        ndk {
            abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86_64")
        }
    }

    externalNativeBuild {
        cmake {
            path = file("src/main/cpp/CMakeLists.txt")
            version = "3.22.1"
        }
    }

    buildTypes {
        debug {
            // Timings come from native LiteRT code; the Kotlin side only records clocks.
            isMinifyEnabled = false
        }
        release {
            isMinifyEnabled = false
            signingConfig = signingConfigs.getByName("debug")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }

    // .tflite files must stay uncompressed if a model is ever bundled as an asset (.pte likewise).
    androidResources {
        noCompress += listOf("tflite", "pte")
    }
}

dependencies {
    implementation("com.google.ai.edge.litert:litert:$litert")
    implementation("com.google.ai.edge.litert:litert-gpu:$litert")
    implementation("com.google.ai.edge.litert:litert-gpu-api:$litert")
    implementation("org.pytorch:executorch-android:$executorch")

    androidTestImplementation("androidx.test:runner:1.6.2")
    androidTestImplementation("androidx.test:core:1.6.1")
    androidTestImplementation("androidx.test.ext:junit:1.2.1")
    androidTestImplementation("junit:junit:4.13.2")
}
