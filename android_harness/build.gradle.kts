// AGP 8.7.3 needs Gradle >= 8.9 and JDK 17; Kotlin 2.0.21 is supported by AGP 8.7.
plugins {
    id("com.android.application") version "8.7.3" apply false
    id("org.jetbrains.kotlin.android") version "2.0.21" apply false
}
