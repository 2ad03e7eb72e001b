// The Context interface a Lambda Java function compiles against, written
// here so the test needs no download; a real function brings
// aws-lambda-java-core's.
package com.amazonaws.services.lambda.runtime;

public interface Context {
    String getAwsRequestId();
    String getLogGroupName();
    String getLogStreamName();
    String getFunctionName();
    String getFunctionVersion();
    String getInvokedFunctionArn();
    Object getIdentity();
    Object getClientContext();
    int getRemainingTimeInMillis();
    int getMemoryLimitInMB();
    LambdaLogger getLogger();
}
