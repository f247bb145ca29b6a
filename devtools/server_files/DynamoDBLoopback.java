// Starts DynamoDB Local like its own ServerRunner does, but with the HTTP connector bound to
// 127.0.0.1: the jar's command line has no bind-address option and listens on every interface.
// Run in single-file source mode with the DynamoDB Local jar and its lib on the class path;
// the arguments are DynamoDB Local's own (-inMemory, -sharedDb, -port ...).

import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public class DynamoDBLoopback {
    public static void main(String[] args) throws Exception {
        String host = System.getProperty("dynamodb.bind", "127.0.0.1");
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field serverField = DynamoDBProxyServer.class.getDeclaredField("server");
        serverField.setAccessible(true);
        Server server = (Server) serverField.get(proxy);
        for (Connector connector : server.getConnectors()) {
            ((ServerConnector) connector).setHost(host);
        }
        proxy.start();
        System.out.println("DynamoDB Local listening on " + host);
        proxy.join();
    }
}
