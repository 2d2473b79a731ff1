pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        // LiteRT and AndroidX artifacts are published on Google Maven only.
        google()
        mavenCentral()
    }
}

rootProject.name = "VitdeployHarness"
include(":app")
