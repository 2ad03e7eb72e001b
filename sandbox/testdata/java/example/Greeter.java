package example;

public class Greeter {
    public static class Person {
        public String name;
        public int age;
    }

    public static class Greeting {
        public String message;
        public boolean adult;
    }

    public Greeting greet(Person p) {
        Greeting g = new Greeting();
        g.message = "hello " + p.name;
        g.adult = p.age >= 18;
        return g;
    }

    public String fail(String input) {
        throw new IllegalStateException("cannot handle " + input);
    }
}
