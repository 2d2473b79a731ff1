package com.vitdeploy.harness

import android.app.Activity
import android.os.Bundle
import android.widget.TextView
import org.tensorflow.lite.TensorFlowLite

/** The host app exists so the instrumentation has a process to run in; it only says how to use it. */
class MainActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val text = TextView(this)
        text.setPadding(48, 48, 48, 48)
        text.text = buildString {
            append("vitdeploy harness\n\n")
            append("LiteRT runtime ").append(TensorFlowLite.runtimeVersion()).append("\n\n")
            append("Run it from a computer:\n  vitdeploy profile model.tflite --device pixel7\n\n")
            append("big cores: ").append(CpuAffinity.fastestCpus(Runtime.getRuntime().availableProcessors()).joinToString())
        }
        setContentView(text)
    }
}
