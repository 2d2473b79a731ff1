import CoreML
import SwiftUI

/// The host app: XCTest runs HarnessBenchmarkTests inside this process, so the
/// tests share its sandbox (Documents/vitdeploy/<request-id>/ is where devicectl copies files).
@main
struct VitdeployHarnessApp: App {
    var body: some Scene {
        WindowGroup {
            VStack(alignment: .leading, spacing: 12) {
                Text("vitdeploy harness").font(.title)
                Text("Run it from a Mac:")
                Text("vitdeploy profile model.mlpackage --device iphone12").font(.system(.body, design: .monospaced))
                Text("Requests land in Documents/vitdeploy/.").font(.footnote)
            }
            .padding()
        }
    }
}
