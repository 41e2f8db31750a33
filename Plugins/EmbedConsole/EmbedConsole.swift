import Foundation
import PackagePlugin

/// Embeds the web console's files (the target's `Console` folder: HTML, CSS, JavaScript) in the target
/// as Swift string literals, so that `presence` stays one self-contained binary: no resource bundle to
/// ship beside it, nothing fetched at run time. Runs `embed-files` whenever a file of the folder changes.
@main
struct EmbedConsole: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        guard let target = target as? SourceModuleTarget else { return [] }
        let folder = target.directoryURL.appending(path: "Console")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
            .filter { [".html", ".css", ".js", ".svg"].contains(where: $0.hasSuffix) }
            .sorted()
        let inputs = names.map { folder.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "ConsoleFiles.swift")
        return [
            .buildCommand(
                displayName: "Embedding the web console (\(names.count) files)",
                executable: try context.tool(named: "embed-files").url,
                arguments: [output.path] + inputs.map(\.path),
                inputFiles: inputs,
                outputFiles: [output]
            )
        ]
    }
}
