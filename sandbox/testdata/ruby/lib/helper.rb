module Helper
  def self.value
    42
  end
end
