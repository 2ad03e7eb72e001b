export const helper = () => 42;
